"""Label Studio's own settings, with the files it writes kept private to its user.

Django chmods every file it stores (an export snapshot, an uploaded file) to
``FILE_UPLOAD_PERMISSIONS``, 0644 by default, whatever the process's umask: a snapshot holds
every reviewer's annotations. The server mcie starts runs with a private umask and a 0700 data
dir; these two settings keep what Django stores 0600 / 0700 too.
"""

import os

# Label Studio's settings module reads django.conf.settings while it loads (its Sentry set-up):
# that lookup must find Label Studio's module, not this one half-loaded. Django reads the
# variable again on each first lookup; the settings Django keeps are this module's.
os.environ["DJANGO_SETTINGS_MODULE"] = "label_studio.core.settings.label_studio"
from label_studio.core.settings.label_studio import *  # noqa: E402, F403 (Label Studio's, whole)

os.environ["DJANGO_SETTINGS_MODULE"] = __name__

FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
