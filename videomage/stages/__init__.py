"""The learning and sampling stages of the method, each a function over the component
interfaces: subject learning, motion learning, fusion and generation."""
