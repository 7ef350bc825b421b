"""brain2img's tests: one sub-package per layer of the library; builders of small real-format files in
``tests.builders``."""
