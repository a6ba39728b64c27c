"""``stalegrad advise``: which workers, K, minibatch and step to use on a cluster to reach a target error soonest.

* :mod:`.protocols` -- ringmaster's thresholds R and mindflayer's cutoffs, screened by theory;
* :mod:`.theory` -- the fixed-time theory's optimal worker count (Tyurin & Richtárik 2023), a problem's noise
  ratio, the steps worth trying;
* :mod:`.candidates` -- a candidate configuration and its replays with common random numbers;
* :mod:`.search` -- candidates screened by theory and confirmed by replay with common random numbers
  (successive halving);
* :mod:`.validation` -- the final choice on fresh replications, paired with the naive choice;
* :mod:`.advice` -- the ranked answer, the recommendation and its command lines.
"""

from .advice import Advice, advise
from .search import Candidate, search
from .theory import noise_scale, step_grid, theory_workers

__all__ = ["Advice", "Candidate", "advise", "noise_scale", "search", "step_grid", "theory_workers"]
