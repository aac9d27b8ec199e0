"""Training: the agent, the update, the compiled loop and the host loop, the run driver.

Called, ``mtdqn.train(tasks=..., steps=..., ...)`` is :func:`mtdqn.api.train` (see :mod:`mtdqn.callables`).
"""

from mtdqn.callables import callable_as_api

callable_as_api(__name__)
