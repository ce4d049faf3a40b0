"""The editing panels the main window docks: layers, prompts, properties and timeline.

Each panel takes the editor's shared `EditorState`, observes the open document and
changes it only through undoable commands.
"""

from styleclip_desktop.ui.panels.layers_panel import LayersPanel
from styleclip_desktop.ui.panels.prompt_panel import PromptPanel
from styleclip_desktop.ui.panels.properties_panel import PropertiesPanel
from styleclip_desktop.ui.panels.timeline_panel import TimelinePanel

__all__ = ["LayersPanel", "PromptPanel", "PropertiesPanel", "TimelinePanel"]
