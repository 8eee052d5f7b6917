"""Files on disk: atomic writes that never leave a partial file, and the layout of a run's folder.

Every part of the package writes through `atomic` and names a run's paths through `workdir`.
Neither imports TensorFlow.
"""
