"""The parts of ``benchmarks/throughput.py``; run that script, not these modules.

- ``worker_child``: the worker processes' mode (one SDK ``Worker`` serving ``bench``);
- ``processes``: the server and worker processes, temporary directories and the
  PostgreSQL database of a run, all undone by ``Resources``;
- ``client``: the REST calls: tenant set-up, triggering, waiting for completion;
- ``measure``: executions, tasks, /_/metrics and CPU from /proc, percentiles, phases;
- ``report``: the rows of one store's table;
- ``profiling``: py-spy and cProfile of the server.
"""
