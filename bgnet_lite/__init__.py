"""bgnet-lite: the support package of the BGNet book.

Every component of the paper lives here once; the chapters in ``book/`` import it.
"""

__version__ = "0.1.0"
