"""The project file: loaded once, validated into frozen objects, every error at its line.

- ``yamlfile``: YAML with the line of every key, ``$env`` values, bounded aliases.
- ``schema``: frozen dataclasses as schemas (``option()``), and the validator.
- ``project``: the ``Project`` schema, ``-s`` overrides, and ``load_project``.
"""
