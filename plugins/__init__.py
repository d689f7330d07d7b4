"""fw's bundled plugins; each module is an ordinary plugin found through the ``fw`` entry points."""
