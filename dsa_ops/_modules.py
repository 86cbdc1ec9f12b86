"""Module surgery shared by the model conversions: swapping submodules in place."""


def replace_submodules(model, chosen, convert):
    """Replaces every submodule of `model` (not model itself) for which chosen(module) holds by
    convert(module), in place; returns how many were replaced."""
    targets = [(name, module) for name, module in model.named_modules() if name and chosen(module)]
    for name, module in targets:
        parent_name, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent_name), attribute, convert(module))
    return len(targets)
