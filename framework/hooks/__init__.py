"""The plugin machinery behind ``hookspecs.py``: finding plugins and calling them.

- ``manager``: the pluggy manager, built in the documented discovery order.
- ``builtin``: fw's own plugin, ``fw`` (its parsers, registered ``trylast``).
- ``registry``: what the registry hooks register (spiders, exporters, parsers, middlewares).
- ``components``: the spider, exporters and middlewares a project asks for, with options.
- ``events``: the event hooks, called one plugin at a time.
"""
