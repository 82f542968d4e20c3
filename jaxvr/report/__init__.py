"""Tables and figures for jaxvr results."""
