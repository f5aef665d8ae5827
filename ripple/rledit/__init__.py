"""RLEdit (Li et al., ICML 2025): a hypernetwork that predicts each edit from the model's keys and
loss gradients, trained over whole sequences of edits so that late edits still land.

* :mod:`ripple.rledit.net`: the network (running moments, identity-initialised low-rank blocks,
  the ridge solve);
* :mod:`ripple.rledit.hypernet`: a trained hypernetwork as one value (save, load, the model check);
* :mod:`ripple.rledit.features`: keys and gradients at the answer tokens, and the training losses;
* :mod:`ripple.rledit.train`: training over edit sequences (``ripple rledit train``);
* :mod:`ripple.rledit.store`: the shipped and cached hypernetworks;
* the editor itself is ``rledit`` in :mod:`ripple.rledit.editor`.
"""
