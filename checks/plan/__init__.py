"""What to run where, for how much: coverage matrix, cost-optimal plans and Prow jobs, from the checks themselves.

- :mod:`~checks.plan.inventory` collects the suite's checks through pytest (no hand-kept list);
- :mod:`~checks.plan.matrix` decides run / skip-with-reason for every check × instance type with the suite's
  own selection rule (declared needs × params) and attaches durations (measured where a results.json has
  them, else marked estimates);
- :mod:`~checks.plan.goals` names what a plan is for (the roadmap §4.4 use cases, marker expressions, check
  lists) and how often it runs;
- :mod:`~checks.plan.cost` finds the cheapest set of instance types covering a goal (exact weighted set
  cover) and compares it with the roadmap's table;
- :mod:`~checks.plan.prow` writes kubernetes/test-infra job configs; :mod:`~checks.plan.prowschema` checks
  them against the job-config fields they use.
"""
