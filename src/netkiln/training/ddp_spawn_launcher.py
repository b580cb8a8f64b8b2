"""`ddp_spawn`: the main process only waits for the ranks; what run.py reads from its trainer afterwards (epochs,
steps, the best score) must be sent back from rank 0, beside what Lightning sends (weights, callback_metrics)."""
import io

import torch
from lightning_fabric.utilities.apply_func import apply_to_collection

from netkiln.compat import multiprocessing_launcher_class


class SpawnLauncher(multiprocessing_launcher_class()):
    """Lightning's ddp_spawn launcher, also handing rank 0's loop progress and best score back to the main process."""

    def get_extra_results(self, trainer):
        extra = super().get_extra_results(trainer)
        callback = trainer.checkpoint_callback
        state = {"fit_loop": trainer.fit_loop.state_dict(),
                 "checkpoint": callback.state_dict() if callback is not None else None,
                 "last_saved_epoch": getattr(callback, "last_saved_epoch", None)}
        # As Lightning sends callback_metrics: bytes, not tensors (a tensor would travel as a shared-memory fd
        # that is gone once the worker exits).
        buffer = io.BytesIO()
        torch.save(apply_to_collection(state, torch.Tensor, lambda t: t.cpu()), buffer)
        extra["netkiln"] = buffer.getvalue()
        return extra

    def update_main_process_results(self, trainer, extra):
        super().update_main_process_results(trainer, extra)
        if "netkiln" not in extra:
            return
        state = torch.load(io.BytesIO(extra["netkiln"]), weights_only=True)
        trainer.fit_loop.load_state_dict(state["fit_loop"])
        callback = trainer.checkpoint_callback
        if callback is not None and state["checkpoint"] is not None:
            callback.load_state_dict(state["checkpoint"])
            callback.last_saved_epoch = state["last_saved_epoch"]
