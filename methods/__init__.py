"""Every method behind one interface (``methods.base``). Importing the package registers the built-in
methods, as timm's package registers its models: the registry itself imports none of its plugins."""

from methods import coresets, presets  # noqa: F401  (registration side effects)
