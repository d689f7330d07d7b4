"""The package version, read statically by the build, and the distribution's name."""

__version__ = "0.1.0"
#: The name fw is installed by (``pip install fwcrawl``); ``fw`` on PyPI is another project.
DISTRIBUTION = "fwcrawl"
