"""Planning with a world model: CEM, MPPI and gradient planners, the MPC loop, the dream env.

``physworld/Dream-v0`` is registered on ``import physworld`` (``gymnasium.make`` builds a
:class:`DreamEnv`, ``gymnasium.make_vec`` a :class:`DreamVectorEnv`).

    planner = CEMPlanner(model)            # goal="state": compare probe readouts with the goal
    action = planner.act(obs, info["goal"])
"""

from physworld.plan.dream import DreamEnv, DreamVectorEnv, RealWorldObservation
from physworld.plan.mpc import Episode, ExpertPolicy, RandomPolicy, run_mpc
from physworld.plan.planners import (
    PLANNERS,
    CEMPlanner,
    GradientPlanner,
    MPPIPlanner,
    PlanCost,
    Planner,
    load_planning_model,
    make_planner,
)

__all__ = [
    "PLANNERS",
    "CEMPlanner",
    "DreamEnv",
    "DreamVectorEnv",
    "Episode",
    "ExpertPolicy",
    "GradientPlanner",
    "MPPIPlanner",
    "PlanCost",
    "Planner",
    "RandomPolicy",
    "RealWorldObservation",
    "load_planning_model",
    "make_planner",
    "run_mpc",
]
