"""Native REST API of predictions: stored predictions, suggestions, quick test, prediction keys.

Each endpoint calls the service its page calls, with the page's role:
- stored predictions (reviewers and admins): the Predictions tab's list through
  predictions.services.ranking.ranked_predictions, so "most gain" here is the order a reviewer
  sees, with each row's reason; ranked lists page by number (an order that depends on the whole
  open set has no stable cursor). Promote ("Save and close", optionally with the tags or boxes
  to save) and dismiss through predictions.services.triage;
- suggested tags and boxes (predictions.services.suggestions): run (reviewers), list and
  accept one (members), accept all above a confidence (reviewers);
- quick test (members; storing the result needs the reviewer role): predict.quick_test;
- prediction keys (admins): predictions.services.keys; a new secret is in the answer that made
  it and never again.
"""
