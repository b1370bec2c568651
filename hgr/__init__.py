"""hgr: real-time hand gestures and finger counting, as a fleet of edges and a hub.

One namespace, four layers that only point down (docs/architecture.md):

- ``hgr.common``: the base (config, errors, images, the model engine, worker pool, protocol, bus, ...);
- ``hgr.edge`` and ``hgr.hub``: the two services, each on ``hgr.common`` only;
- ``hgr.loadtest``: ``hgr bench`` (its sections, load clients, process measurements, sample photos);
- ``hgr.cli``, ``hgr.serve``, ``hgr.servers``, ``hgr.allinone``: the application layer that starts them.

In the source tree ``hgr/common``, ``hgr/edge``, ``hgr/hub`` and ``hgr/loadtest`` are links to the
top-level folders of those names, so the repository keeps its layout and an install claims only ``hgr``.
"""
