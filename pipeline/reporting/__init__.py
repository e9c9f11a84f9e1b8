"""Building blocks of the ``report`` stage: inputs, committed-metrics diff, MLflow ablation, figures, markdown."""
