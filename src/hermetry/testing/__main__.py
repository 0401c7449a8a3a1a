"""``python -m hermetry.testing``: run the scripted OpenAI-compatible model server on loopback.

The same as ``python -m hermetry.testing.scripted_server``: it prints its base URL (for
Hermes' ``CUSTOM_BASE_URL``) and answers from ``--script FILE`` (a JSON list of replies, the
fields of :class:`hermetry.testing.ScriptedReply`) until it is stopped::

    python -m hermetry.testing --script replies.json
    CUSTOM_BASE_URL=http://127.0.0.1:PORT/v1 hermes -z "hello" --provider custom -m scripted-model
"""

from hermetry.testing.scripted_server import main

if __name__ == "__main__":
    raise SystemExit(main())
