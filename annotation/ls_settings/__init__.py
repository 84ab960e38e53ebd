"""Settings for the Label Studio server mcie starts (:mod:`mcie.annotation.server`).

Not imported by mcie: this folder goes on the server's ``PYTHONPATH`` and
``DJANGO_SETTINGS_MODULE`` names :mod:`mcie_ls_settings` in it (a name no package of Label
Studio's takes).
"""
