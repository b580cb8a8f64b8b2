"""netkiln's Hydra sweeper plugin on current Optuna: `hydra/sweeper=optuna`."""
