"""pcv.training: the training loop and what it is made of.

- :mod:`pcv.training.trainer`: :func:`train_and_evaluate`, the loop
  (``python -m pcv.train``).
- :mod:`pcv.training.step`: the jitted train step; :mod:`pcv.training.losses`:
  the semantic and vote losses.
- :mod:`pcv.training.state`: the train state, schedule and optimizer.
- :mod:`pcv.training.checkpoints`: resume and save; :mod:`pcv.training.interrupts`:
  SIGTERM and Ctrl-C.
- :mod:`pcv.training.finetune`: ``init_from``, starting from a trained model.
- :mod:`pcv.training.recipe`: the custom config's choices from a dataset's
  statistics.
"""

from pcv import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "train_and_evaluate": "trainer",
        "make_train_step": "step",
        "pcv_loss": "losses",
        "TrainState": "state",
        "create_train_state": "state",
        "choose": "recipe",
    },
)
