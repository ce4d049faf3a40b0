; Inno Setup script of StyleCLIP Desktop. build_installer.py fills every value below from
; pyproject.toml on the command line (/D...), so no version is written here:
;   iscc /DAppVersion=0.1.0 /DSourceDir=...\dist\styleclip-desktop ... styleclip-desktop.iss

#ifndef AppVersion
  #error Run through build_installer.py (it passes AppVersion and the folders from pyproject.toml)
#endif
#ifndef AppName
  #define AppName "StyleCLIP Desktop"
#endif
#ifndef AppExeName
  #define AppExeName "styleclip-desktop.exe"
#endif

[Setup]
AppId={{{#AppGuid}}
AppName={#AppName}
AppVersion={#AppVersion}
VersionInfoVersion={#AppNumericVersion}
AppPublisher={#AppPublisher}
AppComments={#AppDescription}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
UninstallDisplayIcon={app}\{#AppExeName}
SetupIconFile={#SetupIconFile}
OutputDir={#OutputDir}
OutputBaseFilename={#OutputBaseFilename}
; Torch and Qt make a big folder: LZMA2 in solid mode shrinks it the most.
Compression=lzma2/max
SolidCompression=yes
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
; Per-user install by default (no admin prompt); the user may choose all users.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
WizardStyle=modern
DisableProgramGroupPage=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExeName}"
Name: "{group}\{cm:UninstallProgram,{#AppName}}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExeName}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExeName}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Only what the installed program itself writes next to its files; models and projects
; live in the user's data folder and are kept.
Type: filesandordirs; Name: "{app}\__pycache__"
