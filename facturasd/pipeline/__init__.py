"""The stages that move one received file along, over the durable queue.

ingest.py     inbox → ledger row → archive (then parse-and-check is queued)
process.py    parse and check in a worker process → state, folder, `.motivo.txt`
decide.py     the pure decision: a document's state and its file's folder
lifecycle.py  the one way an invoice changes state, and the stages each state starts
review.py     what a person does: reprocess, assign, accept, discard
motivo.py     the `.motivo.txt` beside a file that left the archive
"""
