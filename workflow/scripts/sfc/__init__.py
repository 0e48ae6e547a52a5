"""sfc: the science behind the structure-function coupling workflow.

Plain Python, no Snakemake imports: every function takes arrays, tables and
paths and returns arrays and tables, so it can be unit-tested on its own.
"""

__version__ = "0.1.0"
