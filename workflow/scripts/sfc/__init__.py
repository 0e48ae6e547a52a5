"""sfc: the science behind the structure-function coupling workflow.

Plain Python, no Snakemake imports: every function takes arrays, tables and
paths and returns arrays and tables, so it can be unit-tested on its own.
"""

import os

__version__ = "0.1.0"

# ANTs' multi-threaded metrics sum in a thread-dependent order, so two registrations with
# the same seed differ unless ITK runs one thread. Reproducibility wins (the workflow runs
# subjects in parallel instead). It must be set before ITK starts, hence here, when the
# package is first imported; a user may still override it in the environment.
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
