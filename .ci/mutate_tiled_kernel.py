"""Mutation check of the tiled attention kernel's CPU tests: each fault below (one line, or the
same line wherever it occurs), applied alone to the kernel's CUDA text, must fail some of the
tests that run that text on the host.

    python .ci/mutate_tiled_kernel.py        # from the checkout's root, about 5 minutes

Prints, per mutation, pytest's summary line, and exits 1 if a mutation failed no test. The
kernel's source file is restored afterwards, whatever happens.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOURCE = Path("sci/tensor_attention/_gpu_source.py")
TESTS = "tests/tensor_attention/test_tensor_attention_tiled_kernel.py"
MUTATIONS = {  # name: (text in the kernel, its replacement)
    "a barrier removed (after the softmax step)": (
        "O[r_own * LDA + l] *= rescale;\n        __syncthreads();",
        "O[r_own * LDA + l] *= rescale;\n"),
    "the running numerators not rescaled": (
        "O[r_own * LDA + l] *= rescale;", "O[r_own * LDA + l] *= (T)1;"),
    "the 3xTF32 low terms dropped": (
        "    wmma::mma_sync(c, a_lo, b_hi, c);  // the small terms first\n", ""),
    "an off-by-one causal mask": ("!(causal && k > i_own)", "!(causal && k >= i_own)"),
    "a warp split across a wmma call": (
        "            FragC acc;\n            wmma::fill_fragment(acc, (T)0);",
        "            FragC acc;\n            wmma::fill_fragment(acc, (T)0);\n"
        "            if (tid % 2) wmma::fill_fragment(acc, (T)0);"),
    "a skew that misaligns the tiles": (
        "#define SKEW (16 / (int)sizeof(T))", "#define SKEW (8 / (int)sizeof(T))"),
}


def main() -> int:
    original = SOURCE.read_text()
    survivors = []
    try:
        for name, (text, replacement) in MUTATIONS.items():
            if text not in original:
                print(f"{name}: the text to mutate is not in {SOURCE}")
                return 1
            SOURCE.write_text(original.replace(text, replacement))  # every occurrence
            done = subprocess.run([sys.executable, "-m", "pytest", TESTS, "-q", "-n", "2",
                                   "-p", "no:cacheprovider"], capture_output=True, text=True)
            summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?"
            print(f"{name}: {summary}", flush=True)
            if done.returncode == 0:
                survivors.append(name)
    finally:
        SOURCE.write_text(original)
    if survivors:
        print("not caught:", "; ".join(survivors))
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
