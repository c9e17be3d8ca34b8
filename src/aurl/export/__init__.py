"""Exports of trained models to other runtimes: ONNX graphs with an explicit KV cache.

Needs the ``onnx`` extra (``pip install -e '.[onnx]'``); nothing in generation imports this
package (the ONNX backend, :mod:`aurl.generate.onnx_backend`, reads what it writes).
"""
