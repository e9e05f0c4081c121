"""Visual Wake Words data: label rule, sources, image processing, TFRecord writing, synthetic scenes, reader.

Split across modules so that the pieces an ingest worker needs (``sources``, ``images``, ``pixels``,
``records``, ``synth``) import neither TensorFlow nor Beam: a Beam worker process starts in about a second
instead of the ten that ``import tensorflow`` takes on these machines. Only ``reader`` (the tf.data pipeline used by
search and training) imports TensorFlow. The Beam pipeline itself lives in ``components/vww_ingest.py``.
"""
