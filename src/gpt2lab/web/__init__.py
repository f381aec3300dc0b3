"""The local web app: GPT-2 as a notebook in the browser (``gpt2lab serve``). See docs/web.md.

``gpt2lab.web.app.create_app`` builds the FastAPI app; ``gpt2lab.cli.serve`` adds the ``serve``
command. Nothing is imported here, so the other commands never load FastAPI.
"""
