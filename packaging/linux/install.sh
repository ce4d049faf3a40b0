#!/bin/sh
# Install StyleCLIP Desktop from this unpacked archive for the current user (no root needed):
#   ./install.sh            install or upgrade into ~/.local
#   ./install.sh --remove   uninstall (downloaded models in ~/.local/share/styleclip-desktop stay)
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-"$HOME/.local"}
APP_DIR="$PREFIX/lib/styleclip-desktop"
DESKTOP="$PREFIX/share/applications/styleclip-desktop.desktop"
ICONS="$PREFIX/share/icons/hicolor"

remove() {
    rm -rf "$APP_DIR" "$PREFIX/bin/styleclip-desktop" "$DESKTOP"
    find "$ICONS" -name 'styleclip-desktop.*' -delete 2>/dev/null || true
}

if [ "${1:-}" = "--remove" ]; then
    remove
    echo "StyleCLIP Desktop removed from $PREFIX"
    exit 0
fi

remove  # an upgrade replaces the whole folder, so no file of the old version lingers
mkdir -p "$APP_DIR" "$PREFIX/bin" "$(dirname "$DESKTOP")" "$ICONS"
cp -a "$HERE/styleclip-desktop/." "$APP_DIR/"
ln -sf "$APP_DIR/styleclip-desktop" "$PREFIX/bin/styleclip-desktop"
# Exec with the full path: ~/.local/bin is not on every desktop session's PATH.
sed "s|^Exec=styleclip-desktop|Exec=\"$APP_DIR/styleclip-desktop\"|" "$HERE/share/applications/styleclip-desktop.desktop" > "$DESKTOP"
cp -a "$HERE/share/icons/hicolor/." "$ICONS/"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$(dirname "$DESKTOP")" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$ICONS" || true
echo "StyleCLIP Desktop installed: run 'styleclip-desktop' or find it in your applications menu."
echo "Check it with: $APP_DIR/styleclip-desktop --self-test"
