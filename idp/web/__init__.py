"""Pages a person sees; module X renders templates/X/*.html."""
