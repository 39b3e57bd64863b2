"""A counting stand-in for CuPy on the host (NumPy underneath): traces sci's "cupy" path.

Installed as ``cupy`` by a test fixture (:func:`submodules` lists what goes into
``sys.modules``; importing this file changes nothing there), it runs
the code CuPy arrays take (dispatch key ``"cupy"``) on the CPU and counts, in ``COUNTS``:

* ``"op"``: array operations (each at least one kernel launch on a GPU): ufuncs (``@``, ``*``,
  reductions), creation and copying functions, fancy indexing, ``astype`` copies;
* ``"h2d"``: NumPy arrays made device arrays, explicitly (``asarray``) or implicitly (a NumPy
  index or operand): each a synchronous host-to-device copy on a GPU;
* ``"d2h"``: device values read on the host (``bool``, ``float``, ``item``, ``get``);
* ``"memGetInfo"``: driver queries of the free memory.

Views (reshape, transpose, basic slices) are free, as on a GPU. It is a model of CuPy, not
CuPy: only the calls sci's Gaunt paths make are checked to behave alike.
"""
import collections
import sys
import types

import numpy as _np

COUNTS = collections.Counter()
LOG = []
__version__ = "0.0-fake"


def _note(kind, what):
    COUNTS[kind] += 1
    LOG.append((kind, what))


def _plain(x):
    return type(x) is _np.ndarray


def _base(x):
    if isinstance(x, ndarray):
        return x.view(_np.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_base(v) for v in x)
    return x


def _wrap(x):
    if isinstance(x, _np.generic):  # CuPy reductions give 0-d device arrays
        return _np.asarray(x).view(ndarray)
    if type(x) is _np.ndarray:
        return x.view(ndarray)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _check_uploads(args, what):
    for a in args:
        if _plain(a) and a.ndim > 0:
            _note("h2d", what)
        elif isinstance(a, (list, tuple)):
            _check_uploads(a, what)


class ndarray(_np.ndarray):
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _check_uploads(inputs, ufunc.__name__)
        if "out" in kwargs:
            kwargs["out"] = tuple(_base(o) for o in kwargs["out"])
        _note("op", ufunc.__name__)
        return _wrap(getattr(ufunc, method)(*(_base(i) for i in inputs), **kwargs))

    def __array_function__(self, func, types_, args, kwargs):
        _note("op", func.__name__)
        return _wrap(func(*_base(list(args)), **{k: _base(v) for k, v in kwargs.items()}))

    def _index(self, idx):
        items = idx if isinstance(idx, tuple) else (idx,)
        advanced = False
        for i in items:
            if _plain(i) or isinstance(i, list):
                _note("h2d", "index")
                advanced = True
            elif isinstance(i, ndarray):
                advanced = True
        return tuple(_base(i) for i in items) if isinstance(idx, tuple) else _base(idx), advanced

    def __getitem__(self, idx):
        b, advanced = self._index(idx)
        if advanced:
            _note("op", "getitem")
        return _wrap(self.view(_np.ndarray)[b])

    def __setitem__(self, idx, value):
        b, _ = self._index(idx)
        if _plain(value) and value.ndim > 0:
            _note("h2d", "setitem value")
        _note("op", "setitem")
        self.view(_np.ndarray)[b] = _base(value)

    def astype(self, dtype, copy=True, **kw):
        if not copy and _np.dtype(dtype) == self.dtype:
            return self
        _note("op", "astype")
        return _wrap(self.view(_np.ndarray).astype(dtype, copy=copy, **kw))

    def copy(self, order="C"):
        _note("op", "copy")
        return _wrap(self.view(_np.ndarray).copy(order))

    def reshape(self, *shape, **kw):
        b = self.view(_np.ndarray)
        out = b.reshape(*shape, **kw)
        if not _np.shares_memory(out, b):
            _note("op", "reshape-copy")
        return _wrap(out)

    def get(self, *a, **k):
        _note("d2h", "get")
        return self.view(_np.ndarray).copy()

    def __bool__(self):
        _note("d2h", "bool")
        return bool(self.view(_np.ndarray))

    def __float__(self):
        _note("d2h", "float")
        return float(self.view(_np.ndarray))

    def __int__(self):
        _note("d2h", "int")
        return int(self.view(_np.ndarray))

    def item(self):
        _note("d2h", "item")
        return self.view(_np.ndarray).item()

    def __dlpack__(self, *a, **k):
        _note("d2h", "dlpack")
        return self.view(_np.ndarray).__dlpack__(*a, **k)


ndarray.__module__ = "cupy"

# functions of dtypes, answered on the host (no kernel)
_HOST_ONLY = {"isdtype", "result_type", "can_cast", "finfo", "iinfo"}
_VIEWS = {"reshape", "moveaxis", "transpose", "swapaxes", "expand_dims", "squeeze",
          "broadcast_to", "broadcast_arrays", "ravel", "real", "imag"}


def _function(name, fn):
    def call(*args, **kwargs):
        if name in ("asarray", "array", "ascontiguousarray", "asanyarray"):
            a = args[0] if args else kwargs.get("a", kwargs.get("obj"))
            if _plain(a) or isinstance(a, (list, tuple)):
                _note("h2d", name)
                return _wrap(_np.array(a, dtype=kwargs.get("dtype", args[1] if len(args) > 1
                                                             else None)))
            base = _base(a)
            dtype = kwargs.get("dtype", args[1] if len(args) > 1 else None)
            out = _np.ascontiguousarray(base, dtype=dtype) if name == "ascontiguousarray" \
                else _np.asarray(base, dtype=dtype)
            if not _np.shares_memory(out, base) if out.size else False:
                _note("op", name)
            return _wrap(out)
        _check_uploads(args, name)
        out = fn(*_base(list(args)), **{k: _base(v) for k, v in kwargs.items()})
        if name not in _VIEWS and name not in _HOST_ONLY:
            _note("op", name)
        return _wrap(out)

    call.__name__ = name
    return call


def __getattr__(name):
    value = getattr(_np, name)
    if callable(value) and not isinstance(value, type):
        wrapped = _function(name, value)
        globals()[name] = wrapped
        return wrapped
    return value


for _n in ("float32", "float64", "complex64", "complex128", "int64", "int32", "bool_", "dtype",
           "pi", "e", "inf", "nan", "newaxis", "int8", "uint8", "int16", "uint16", "uint32",
           "uint64", "float16", "intp", "iinfo", "finfo", "result_type", "isscalar",
           "can_cast", "ndim", "shape"):
    globals()[_n] = getattr(_np, _n)

abs = _function("abs", _np.abs)
max = _function("max", _np.max)
min = _function("min", _np.min)
round = _function("round", _np.round)


def _submodule(name, source):
    mod = types.ModuleType(f"cupy.{name}")

    def ga(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _function(f"{name}.{attr}", getattr(source, attr))

    mod.__getattr__ = ga
    mod.__path__ = []
    return mod


fft = _submodule("fft", _np.fft)
linalg = _submodule("linalg", _np.linalg)


class _Device:
    def __init__(self, id=0):
        self.id = int(getattr(id, "id", id) or 0)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def synchronize(self):
        pass

    def __eq__(self, other):
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"

    compute_capability = "90"


class _Runtime:
    @staticmethod
    def memGetInfo():
        _note("memGetInfo", "memGetInfo")
        return (64 * 2**30, 80 * 2**30)

    @staticmethod
    def getDeviceCount():
        return 1


class _Pool:
    def free_bytes(self):
        return 0

    def used_bytes(self):
        return 0


cuda = types.ModuleType("cupy.cuda")
cuda.__path__ = []
cuda.Device = _Device
_device_mod = types.ModuleType("cupy.cuda.device")
_device_mod.Device = _Device
cuda.device = _device_mod
cuda.is_available = lambda: True
cuda.runtime = _Runtime()
_pool = _Pool()


def get_default_memory_pool():
    return _pool


def get_array_module(*args):
    return sys.modules[__name__]


def from_dlpack(x):
    _note("h2d", "from_dlpack")
    return _wrap(_np.from_dlpack(x))


def submodules() -> dict:
    """The submodules to enter in ``sys.modules`` beside ``cupy`` itself."""
    return {"cupy.cuda": cuda, "cupy.cuda.device": _device_mod, "cupy.fft": fft,
            "cupy.linalg": linalg}
