"""Entry points: one per job, the functions the ``mvspin`` command calls and Python users call too.

Every job has the same shape (after EasyMocap's ``apps/`` and Pose2Sim's stage functions):

- a config dataclass ``<Job>Config`` holding every setting of the job (inputs, outputs, options,
  nested library configs). Each field has a docstring under it: the command line makes its flags
  and their help from these (``mvspin.cli.options``). Values are checked in ``__post_init__``
  and a bad value raises :class:`mvspin.config.ConfigError` naming the field, so a config built
  in Python is checked exactly as one built from flags;
- ``run(config, progress=no_progress) -> <Job>Report``: checks every output location (and opens
  every input it will need later) before any work, runs the job's stages in order, reports
  progress through :class:`mvspin.progress.Progress` and returns a report dataclass (what was
  done, the quality figures, the files written);
- errors are :class:`mvspin.errors.MvspinError` subclasses naming the file or config field.

Nothing below ``mvspin.apps`` imports it; only ``mvspin.cli`` and ``tools/`` do.
"""
