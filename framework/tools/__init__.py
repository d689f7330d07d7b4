"""The commands around a crawl: ``fw parse`` and ``fw shell`` (``probe``), ``fw status``
(``status``), ``fw new`` (``scaffold``, ``templates/``), and the generated references in
``docs/`` (``docs``)."""
