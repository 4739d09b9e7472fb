"""EvalGate infrastructure: typed settings, one stack per deployable unit, one construct per capability."""
