"""netkiln: a declarative, config-driven deep-learning model compiler."""

from netkiln.version import __version__  # noqa: F401 - netkiln.__version__


def load(run, *, allow_targets: bool = False):
    """A trained model from a run directory or its `model/` bundle, to predict and evaluate in Python:

        model = netkiln.load("outputs/2026-11-26/13-05-12")
        model.predict(frame)          # labels or values, as `netkiln predict` writes them
        model.predict_proba(frame)    # classifiers: (N, classes), columns in model.classes_ order
        model.evaluate()              # the run's test split; or evaluate(frame) / evaluate((x, y))

    torch is imported here, not by `import netkiln`. See netkiln.saved_model.SavedModel.
    """
    from netkiln.saved_model import SavedModel
    return SavedModel.load(run, allow_targets=allow_targets)
