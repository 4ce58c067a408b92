"""The Gradio app (the browser demo and the Hugging Face Space), as rooms of one purpose each; `app.py` at the top of
the repository is its entry point. Nothing in the library imports this package or Gradio.

Imports run downward, each room using only those above it:

    settings      what the app may do: every limit a Space owner sets, the examples (no Gradio, no torch)
    flags         the command line and the environment variables, into settings
    checks        the inputs a request brings: options text, fields, the clip admitted before it is decoded
    history       one page's answers: records, judging, the CSV and JSON Lines files
    housekeeping  the app's files: their life, the disk quota, removal at shutdown
    slot          the models' slot: the device (ZeroGPU), one question at a time, streaming, Stop, time limit
    admission     the HTTP edge: body caps, files that are not uploads, one place in the queue per client
    showing       results as the page shows them: panels, window table and plot, status lines
    layout        the page's components, its style and keys
    handlers      what the page's events do
    api           `/answer` and `/answer_stream`
    page          the Blocks: layout, handlers and API wired together
    launching     loading the models and serving: `main()`
"""
