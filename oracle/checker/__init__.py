"""The checker: a candidate's gradients judged case by case (``run``), the candidate run where it cannot hurt the
checker (``isolate``: worker processes, deadlines; ``processes``: the warden no process of the candidate
outlives; ``wire``: what crosses, bounded by the case; ``candidate``: one call on its own copies)."""
