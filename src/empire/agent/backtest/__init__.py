"""`empire backtest`: replay a demand trace through the real control loop on a simulated cluster.

`run_backtest(load_trace(), BacktestSettings())` compares `reactive` (HPA), `empire` (predictive +
reactive) and `oracle` (perfect foresight) on the same trace; `report` renders the table, the JSON
and the plot. See the README's backtest section for the cluster model and measured figures.
"""
