"""`empire backtest`: replay a demand trace through the real control loop on a simulated cluster.

`run_backtest(load_trace(), BacktestSettings())` compares `reactive` (HPA), `empire` (predictive +
reactive) and `oracle` (perfect foresight) on the same trace; `report` renders the table, the JSON
and the plot. See the README's backtest section for the cluster model and measured figures.
"""

from empire.agent.backtest.cluster import Books, SimulatedCluster
from empire.agent.backtest.engine import POLICIES, BacktestSettings, PolicyRun, backtest_policy, run_backtest
from empire.agent.backtest.trace import DemandTrace, default_trace_path, load_trace, synthetic_trace

__all__ = [
    "POLICIES",
    "BacktestSettings",
    "Books",
    "DemandTrace",
    "PolicyRun",
    "SimulatedCluster",
    "backtest_policy",
    "default_trace_path",
    "load_trace",
    "run_backtest",
    "synthetic_trace",
]
