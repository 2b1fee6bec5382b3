"""Synthetic training data: two-step LLM prompting (brainstorm tasks, then generate examples).

Entry point: `embedforge-generate` (embedforge.cli.generate). See docs/synth.md.
"""
