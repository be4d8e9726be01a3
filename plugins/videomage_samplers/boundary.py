"""SCS on a backbone of several experts: guided steps stay in the first (highest-noise) expert.

A two-expert model (Wan 2.2 A14B) switches from its high-noise to its low-noise expert at a
boundary timestep. SCS guides the first ``tau`` steps; on such a model it guides only those of
them that run in the expert the sampling starts in, and stops at the switch. Why:

* the guidance aligns the attention maps of the subject and motion branches of one network; the
  other expert is another network, whose maps the refinement of the earlier steps never saw;
* the motion adapter lives in the high-noise expert (its default): after the switch the motion
  branch is the base low-noise expert, whose temporal maps carry no learned motion to transfer;
* layout and motion, which SCS steers, are settled in the high-noise steps; the low-noise steps
  render the subjects' detail.

On a backbone with one denoiser nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from videomage import Backbone


def guided_steps(backbone: Backbone, timesteps: Sequence, tau: int) -> int:
    """``tau``, cut at the first step that runs another expert than the first step's."""
    if not backbone.experts or tau <= 0 or len(timesteps) == 0:
        return tau
    first = backbone.expert_at(float(timesteps[0]))
    for i, t in enumerate(timesteps[:tau]):
        if backbone.expert_at(float(t)) != first:
            return i
    return tau
