"""Loss terms of `GeoSSLTask`, the step's shared outputs, the registry.

A term is a small [`LossTerm`][geossl.trainers.terms.base.LossTerm] (an ``nn.Module``) registered
under the name used in ``GeoSSLTask(losses={name: weight})``. It declares what it needs from the
step (which views the query and key encoders must encode, the queue, feature maps, view geometry)
and the options it accepts; the task computes the union once into
[`StepOutputs`][geossl.trainers.terms.base.StepOutputs] and every term reads from it. Adding a
method (CO2, SCRL) is a new registered term; the task does not change.

Where things are: ``base`` (the interface and the step outputs), ``registry``, one module per
term family (``infonce``: ``moco`` and ``tp``; ``geo``; ``co2``; ``scrl``). Importing this
package registers every built-in term.

Example:
    >>> from geossl.trainers.terms import list_loss_terms, resolve_loss_options
    >>> list_loss_terms()
    ['co2', 'geo', 'moco', 'scrl', 'tp']
    >>> resolve_loss_options("co2", {"temperature": 0.1})
    {'temperature': 0.1}
    >>> resolve_loss_options("geo")
    {'normalize_input': True}
"""

from geossl.trainers.terms.base import (
    DEFAULT_LOSSES,
    VIEW_SOURCES,
    EncoderOutput,
    LossOptionValue,
    LossTerm,
    LossTermContext,
    StepOutputs,
    TermOutput,
)
from geossl.trainers.terms.co2 import ConsistentContrastTerm
from geossl.trainers.terms.geo import GeoLocationTerm
from geossl.trainers.terms.infonce import InfoNCETerm, MoCoTerm, TemporalPositiveTerm
from geossl.trainers.terms.registry import (
    TermNeeds,
    create_loss_term,
    get_loss_term,
    list_loss_terms,
    register_loss_term,
    resolve_loss_options,
    term_needs,
)
from geossl.trainers.terms.scrl import SCRL_OPTIONS, SCRLTerm

__all__ = [
    "DEFAULT_LOSSES",
    "SCRL_OPTIONS",
    "VIEW_SOURCES",
    "ConsistentContrastTerm",
    "EncoderOutput",
    "GeoLocationTerm",
    "InfoNCETerm",
    "LossOptionValue",
    "LossTerm",
    "LossTermContext",
    "MoCoTerm",
    "SCRLTerm",
    "StepOutputs",
    "TemporalPositiveTerm",
    "TermNeeds",
    "TermOutput",
    "create_loss_term",
    "get_loss_term",
    "list_loss_terms",
    "register_loss_term",
    "resolve_loss_options",
    "term_needs",
]
