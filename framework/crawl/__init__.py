"""Running a crawl: ``runner`` wires the parts, ``engine`` drives them.

- ``runner``: from a project file to a running engine; signals.
- ``engine``: claim, fetch, decide, parse, settle; the crawl's tasks.
- ``admission``: which requests may be fetched at all.
- ``seeding``: the start requests, in batches, as the frontier has room.
- ``settle``: items to the exporters and leases acknowledged, many pages per step.
- ``failures``: every failure counted and reported; the failures file.
- ``stats``, ``progress``, ``idle``: what a crawl counts, shows, and how workers wait.
"""
