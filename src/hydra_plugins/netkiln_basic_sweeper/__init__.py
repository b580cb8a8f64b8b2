"""Hydra's basic (grid) sweeper, composing each trial's config once: `hydra/sweeper=netkiln_basic`, netkiln's default."""
