"""The comparison protocol behind compare.py (issue 12), built up in steps. Landed so far: the
statistics every comparison report rests on (`optlab.compare.stats`)."""
