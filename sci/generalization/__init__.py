"""Random-matrix generalization and training curves (Advani, Saxe & Sompolinsky 2020).

The Marchenko–Pastur law
------------------------
marchenko_pastur_support      -- edges (1 -/+ sqrt(alpha))^2 of the bulk
marchenko_pastur_pdf          -- density of the continuous part (mass min(1, alpha))
marchenko_pastur_quadrature   -- Gauss rule of the bulk (exact mass and mean for every alpha)

Closed-form curves of the linear student–teacher model
------------------------------------------------------
generalization_error          -- E_g(t) of gradient flow
training_error                -- E_train(t) of gradient flow
asymptotic_errors             -- t -> infinity limits (infinite or finite size)
frozen_subspace_error         -- the part (1 - alpha)_+ (sigma_w^2 + sigma_w0^2) never learned

Early stopping and the optimum
------------------------------
optimal_stopping              -- one global stopping time t_opt and E_g(t_opt)
mode_optimal_stopping         -- per-mode stopping times and Bayes errors
ridge_error                   -- optimal ridge regression (the Bayes error)

Simulations
-----------
simulate_linear               -- exact gradient flow (via the eigenbasis) or finite-step descent
draw_linear_problem           -- the random inputs, teacher, noise and start of a simulation
simulate_two_layer            -- two-layer ReLU student–teacher networks trained by gradient descent
draw_two_layer_problem        -- the random teacher, data and student of a two-layer simulation
"""

from ._curves import (
    asymptotic_errors,
    frozen_subspace_error,
    generalization_error,
    mode_optimal_stopping,
    optimal_stopping,
    ridge_error,
    training_error,
)
from ._marchenko_pastur import (
    marchenko_pastur_pdf,
    marchenko_pastur_quadrature,
    marchenko_pastur_support,
)
from ._simulation import draw_linear_problem, simulate_linear
from ._two_layer import draw_two_layer_problem, simulate_two_layer

__all__ = [
    "asymptotic_errors",
    "draw_linear_problem",
    "draw_two_layer_problem",
    "frozen_subspace_error",
    "generalization_error",
    "marchenko_pastur_pdf",
    "marchenko_pastur_quadrature",
    "marchenko_pastur_support",
    "mode_optimal_stopping",
    "optimal_stopping",
    "ridge_error",
    "simulate_linear",
    "simulate_two_layer",
    "training_error",
]
