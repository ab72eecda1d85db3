"""Interactive play: one session of dreams beside the real env on one key stream (`session`), who drives
(`driver`), recordings (`recording`) and comparing models, with futures dreamed from a frozen real moment
(`futures`)."""
