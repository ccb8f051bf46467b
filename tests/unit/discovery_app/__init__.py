"""A package wired as a whole: discovery walks its modules."""
