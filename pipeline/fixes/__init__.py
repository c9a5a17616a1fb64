"""Fix kinds: declared in the seeds, rendered into the concrete ``fix`` dict of a CandidateEvent.

``params.py`` validates every extracted parameter against its declared bounds, ``render.py``
fills the templates of the four kinds (diff, command, playbook, escalate).
"""

from pipeline.fixes.params import ParamSpec, validate_params
from pipeline.fixes.render import FixSpec, render_fix

__all__ = ["FixSpec", "ParamSpec", "render_fix", "validate_params"]
