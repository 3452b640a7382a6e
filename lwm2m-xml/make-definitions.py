#!/usr/bin/env python3
"""Writes the object definition files of this directory from the tables below.

Each table row is one resource: id, name, operations, instances (S/M), mandatory (M/O), type,
range, units, and a one-line description of our own. The facts (ids, names, operations, types,
multiplicity, ranges, units) are those of the LwM2M Core specification's object tables and the
OMA LwM2M object registry; the wording is ours. Every row was checked against public copies of the
registry files on 2026-11-23 (README.md says which). Run it from anywhere: it writes next to itself.
"""

import os
from xml.sax.saxutils import escape

OBJECTS = [
    # id, name, urn, lwm2m version, object version, instances, mandatory, description, resources
    (0, "LwM2M Security", "urn:oma:lwm2m:oma:0", "1.0", "1.0", "Multiple", "Mandatory",
     "Keys and server addresses the client needs to reach an LwM2M server or bootstrap server. "
     "Only a bootstrap server reads or writes it.", [
        (0, "LwM2M Server URI", "", "S", "M", "String", "0..255 bytes", "", "URI of the server."),
        (1, "Bootstrap-Server", "", "S", "M", "Boolean", "", "", "Whether this instance describes a bootstrap server."),
        (2, "Security Mode", "", "S", "M", "Integer", "0..4", "", "0 PSK, 1 raw public key, 2 certificate, 3 no security, 4 certificate with EST."),
        (3, "Public Key or Identity", "", "S", "M", "Opaque", "", "", "The client's certificate, public key or PSK identity."),
        (4, "Server Public Key", "", "S", "M", "Opaque", "", "", "The server's certificate or public key."),
        (5, "Secret Key", "", "S", "M", "Opaque", "", "", "The client's private key or PSK."),
        (6, "SMS Security Mode", "", "S", "O", "Integer", "0..255", "", "Security mode of the SMS binding."),
        (7, "SMS Binding Key Parameters", "", "S", "O", "Opaque", "6 bytes", "", "Key parameters of the SMS binding."),
        (8, "SMS Binding Secret Key(s)", "", "S", "O", "Opaque", "16-32-48 bytes", "", "Secret keys of the SMS binding."),
        (9, "LwM2M Server SMS Number", "", "S", "O", "String", "", "", "MSISDN of the server for the SMS binding."),
        (10, "Short Server ID", "", "S", "O", "Integer", "1..65534", "", "Links this instance to a Server object instance."),
        (11, "Client Hold Off Time", "", "S", "O", "Integer", "", "s", "Seconds to wait before starting client-initiated bootstrap."),
        (12, "Bootstrap-Server Account Timeout", "", "S", "O", "Integer", "", "s", "Seconds after which the client removes the bootstrap server account."),
    ]),
    (1, "LwM2M Server", "urn:oma:lwm2m:oma:1:1.2", "1.2", "1.2", "Multiple", "Mandatory",
     "Settings of the client's relationship with one LwM2M server.", [
        (0, "Short Server ID", "R", "S", "M", "Integer", "1..65534", "", "Identifies the server."),
        (1, "Lifetime", "RW", "S", "M", "Integer", "", "s", "Registration lifetime in seconds."),
        (2, "Default Minimum Period", "RW", "S", "O", "Integer", "", "s", "Default pmin of observations."),
        (3, "Default Maximum Period", "RW", "S", "O", "Integer", "", "s", "Default pmax of observations."),
        (4, "Disable", "E", "S", "O", "", "", "", "Disables the server for the disable timeout."),
        (5, "Disable Timeout", "RW", "S", "O", "Integer", "", "s", "How long Disable lasts."),
        (6, "Notification Storing When Disabled or Offline", "RW", "S", "M", "Boolean", "", "", "Whether notifications are stored while the server is unreachable."),
        (7, "Binding", "RW", "S", "M", "String", "", "", "Transport bindings the client uses with this server."),
        (8, "Registration Update Trigger", "E", "S", "M", "", "", "", "Makes the client send an Update."),
        (9, "Bootstrap-Request Trigger", "E", "S", "O", "", "", "", "Makes the client start a bootstrap."),
        (10, "APN Link", "RW", "S", "O", "Objlnk", "", "", "APN connection profile to use with this server."),
        (11, "TLS-DTLS Alert Code", "R", "S", "O", "Unsigned Integer", "0..255", "", "Last (D)TLS alert from this server."),
        (12, "Last Bootstrapped", "R", "S", "O", "Time", "", "", "When the client last bootstrapped this server account."),
        (13, "Registration Priority Order", "R", "S", "O", "Unsigned Integer", "", "", "Order in which the client registers to servers."),
        (14, "Initial Registration Delay Timer", "RW", "S", "O", "Unsigned Integer", "", "s", "Delay before registering to this server."),
        (15, "Registration Failure Block", "R", "S", "O", "Boolean", "", "", "Whether a failed registration blocks the next server."),
        (16, "Bootstrap on Registration Failure", "R", "S", "O", "Boolean", "", "", "Whether to bootstrap after registration fails."),
        (17, "Communication Retry Count", "RW", "S", "O", "Unsigned Integer", "", "", "Retries within a communication sequence."),
        (18, "Communication Retry Timer", "RW", "S", "O", "Unsigned Integer", "", "s", "Base of the retry back-off."),
        (19, "Communication Sequence Delay Timer", "RW", "S", "O", "Unsigned Integer", "", "s", "Wait between communication sequences."),
        (20, "Communication Sequence Retry Count", "RW", "S", "O", "Unsigned Integer", "", "", "Communication sequences before giving up."),
        (21, "Trigger", "RW", "S", "O", "Boolean", "", "", "Whether the server may wake the client by SMS."),
        (22, "Preferred Transport", "RW", "S", "O", "String", "", "", "Transport the server prefers."),
        (23, "Mute Send", "RW", "S", "O", "Boolean", "", "", "Whether the client's Send operation is muted."),
        (24, "Alternate APN Links", "RW", "M", "O", "Objlnk", "", "", "Fallback APN connection profiles."),
        (25, "Supported Server Versions", "RW", "M", "O", "String", "", "", "LwM2M versions the server supports."),
        (26, "Default Notification Mode", "RW", "S", "O", "Integer", "0..1", "", "0 non-confirmable, 1 confirmable notifications."),
        (27, "Profile ID Hash Algorithm", "RW", "S", "O", "Unsigned Integer", "0..255", "", "Hash algorithm of profile ids."),
    ]),
    (2, "LwM2M Access Control", "urn:oma:lwm2m:oma:2:1.1", "1.0", "1.1", "Multiple", "Optional",
     "Which server may do what on one object instance.", [
        (0, "Object ID", "R", "S", "M", "Integer", "1..65534", "", "Object the access rights apply to."),
        (1, "Object Instance ID", "R", "S", "M", "Integer", "0..65535", "", "Instance the access rights apply to (65535: creation)."),
        (2, "ACL", "RW", "M", "O", "Integer", "0..31", "", "Access bits per Short Server ID: read, write, execute, delete, create."),
        (3, "Access Control Owner", "RW", "S", "M", "Integer", "0..65535", "", "Short Server ID of the owner."),
    ]),
    (3, "Device", "urn:oma:lwm2m:oma:3:1.2", "1.1", "1.2", "Single", "Mandatory",
     "Information about the device, and its reboot and factory reset functions.", [
        (0, "Manufacturer", "R", "S", "O", "String", "", "", "Manufacturer name."),
        (1, "Model Number", "R", "S", "O", "String", "", "", "Model identifier."),
        (2, "Serial Number", "R", "S", "O", "String", "", "", "Serial number."),
        (3, "Firmware Version", "R", "S", "O", "String", "", "", "Current firmware version."),
        (4, "Reboot", "E", "S", "M", "", "", "", "Reboots the device."),
        (5, "Factory Reset", "E", "S", "O", "", "", "", "Restores the factory configuration."),
        (6, "Available Power Sources", "R", "M", "O", "Integer", "0..7", "", "0 DC, 1 internal battery, 2 external battery, 3 fuel cell, 4 PoE, 5 USB, 6 AC, 7 solar."),
        (7, "Power Source Voltage", "R", "M", "O", "Integer", "", "", "Voltage of each power source, in mV."),
        (8, "Power Source Current", "R", "M", "O", "Integer", "", "", "Current of each power source, in mA."),
        (9, "Battery Level", "R", "S", "O", "Integer", "0..100", "/100", "Internal battery level in percent."),
        (10, "Memory Free", "R", "S", "O", "Integer", "", "", "Free storage, in kilobytes of 1000 bytes."),
        (11, "Error Code", "R", "M", "M", "Integer", "0..32", "", "Current error codes; 0 is no error."),
        (12, "Reset Error Code", "E", "S", "O", "", "", "", "Clears the error codes."),
        (13, "Current Time", "RW", "S", "O", "Time", "", "", "Device clock, Unix time."),
        (14, "UTC Offset", "RW", "S", "O", "String", "", "", "UTC offset, ISO 8601."),
        (15, "Timezone", "RW", "S", "O", "String", "", "", "IANA time zone."),
        (16, "Supported Binding and Modes", "R", "S", "M", "String", "", "", "Bindings and modes the client supports."),
        (17, "Device Type", "R", "S", "O", "String", "", "", "Kind of device."),
        (18, "Hardware Version", "R", "S", "O", "String", "", "", "Hardware version."),
        (19, "Software Version", "R", "S", "O", "String", "", "", "Software version (besides the firmware)."),
        (20, "Battery Status", "R", "S", "O", "Integer", "0..6", "", "0 normal, 1 charging, 2 charge complete, 3 damaged, 4 low, 5 not installed, 6 unknown."),
        (21, "Memory Total", "R", "S", "O", "Integer", "", "", "Total storage, in kilobytes of 1000 bytes."),
        (22, "ExtDevInfo", "R", "M", "O", "Objlnk", "", "", "Objects with more information about the host device."),
    ]),
    (4, "Connectivity Monitoring", "urn:oma:lwm2m:oma:4:1.3", "1.1", "1.3", "Single", "Optional",
     "The network connection the device uses.", [
        (0, "Network Bearer", "R", "S", "M", "Integer", "0..50", "", "Bearer in use (cellular 0..20, wireless 21..40, wireline 41..50)."),
        (1, "Available Network Bearer", "R", "M", "M", "Integer", "0..50", "", "Bearers the device can use."),
        (2, "Radio Signal Strength", "R", "S", "M", "Integer", "", "", "Average received signal strength, in dBm."),
        (3, "Link Quality", "R", "S", "O", "Integer", "", "", "Received link quality."),
        (4, "IP Addresses", "R", "M", "M", "String", "", "", "IP addresses of the connectivity interface."),
        (5, "Router IP Addresses", "R", "M", "O", "String", "", "", "IP addresses of the next-hop routers."),
        (6, "Link Utilization", "R", "S", "O", "Integer", "0..100", "/100", "Average link utilisation in percent."),
        (7, "APN", "R", "M", "O", "String", "", "", "Access point names in use."),
        (8, "Cell ID", "R", "S", "O", "Integer", "", "", "Serving cell id."),
        (9, "SMNC", "R", "S", "O", "Integer", "0..999", "", "Serving mobile network code."),
        (10, "SMCC", "R", "S", "O", "Integer", "0..999", "", "Serving mobile country code."),
        (11, "SignalSNR", "R", "S", "O", "Integer", "", "dB", "Signal to noise and interference ratio."),
        (12, "LAC", "R", "S", "O", "Integer", "", "", "Location area code."),
        (13, "Coverage Enhancement Level", "R", "S", "O", "Integer", "0..4", "", "Coverage enhancement level (NB-IoT, LTE-M)."),
    ]),
    (5, "Firmware Update", "urn:oma:lwm2m:oma:5:1.2", "1.1", "1.2", "Single", "Optional",
     "Firmware package delivery and installation.", [
        (0, "Package", "W", "S", "M", "Opaque", "", "", "The firmware package, pushed."),
        (1, "Package URI", "RW", "S", "M", "String", "0..255", "", "Where the client downloads the package from."),
        (2, "Update", "E", "S", "M", "", "", "", "Installs the downloaded package."),
        (3, "State", "R", "S", "M", "Integer", "0..3", "", "0 idle, 1 downloading, 2 downloaded, 3 updating."),
        (5, "Update Result", "R", "S", "M", "Integer", "0..11", "", "Outcome of the last download or update."),
        (6, "PkgName", "R", "S", "O", "String", "0..255", "", "Package name."),
        (7, "PkgVersion", "R", "S", "O", "String", "0..255", "", "Package version."),
        (8, "Firmware Update Protocol Support", "R", "M", "O", "Integer", "0..5", "", "Download protocols the client supports."),
        (9, "Firmware Update Delivery Method", "R", "S", "M", "Integer", "0..2", "", "0 pull, 1 push, 2 both."),
        (10, "Cancel", "E", "S", "O", "", "", "", "Cancels the download or update."),
        (11, "Severity", "RW", "S", "O", "Integer", "0..2", "", "0 critical, 1 mandatory, 2 optional."),
        (12, "Last State Change Time", "R", "S", "O", "Time", "", "", "When State last changed."),
        (13, "Maximum Defer Period", "RW", "S", "O", "Unsigned Integer", "", "s", "How long the user may defer the update."),
        (14, "Automatic Upgrade at Download", "RW", "S", "O", "Boolean", "", "", "Whether the client installs as soon as the download completes."),
    ]),
    (6, "Location", "urn:oma:lwm2m:oma:6", "1.0", "1.0", "Single", "Optional",
     "The device's position.", [
        (0, "Latitude", "R", "S", "M", "Float", "", "lat", "Latitude in degrees (WGS 84)."),
        (1, "Longitude", "R", "S", "M", "Float", "", "lon", "Longitude in degrees (WGS 84)."),
        (2, "Altitude", "R", "S", "O", "Float", "", "m", "Altitude above sea level."),
        (3, "Radius", "R", "S", "O", "Float", "", "m", "Radius of the uncertainty circle."),
        (4, "Velocity", "R", "S", "O", "Opaque", "", "", "Velocity as 3GPP TS 23.032 encodes it."),
        (5, "Timestamp", "R", "S", "M", "Time", "", "", "When the position was measured."),
        (6, "Speed", "R", "S", "O", "Float", "", "m/s", "Scalar speed."),
    ]),
    (7, "Connectivity Statistics", "urn:oma:lwm2m:oma:7", "1.0", "1.0", "Single", "Optional",
     "Traffic counters over a collection period.", [
        (0, "SMS Tx Counter", "R", "S", "O", "Integer", "", "", "SMS sent in the period."),
        (1, "SMS Rx Counter", "R", "S", "O", "Integer", "", "", "SMS received in the period."),
        (2, "Tx Data", "R", "S", "O", "Integer", "", "", "Kilobytes sent in the period."),
        (3, "Rx Data", "R", "S", "O", "Integer", "", "", "Kilobytes received in the period."),
        (4, "Max Message Size", "R", "S", "O", "Integer", "", "B", "Largest message in the period."),
        (5, "Average Message Size", "R", "S", "O", "Integer", "", "B", "Average message size in the period."),
        (6, "Start", "E", "S", "M", "", "", "", "Resets the counters and starts collecting."),
        (7, "Stop", "E", "S", "M", "", "", "", "Stops collecting."),
        (8, "Collection Period", "RW", "S", "O", "Integer", "", "s", "Length of the collection period (0: unset)."),
    ]),
]

# IPSO smart objects: the sensor resources they share.
SENSOR = {
    5518: ("Timestamp", "R", "S", "O", "Time", "", "", "When the measurement was taken."),
    5601: ("Min Measured Value", "R", "S", "O", "Float", "", "", "Lowest value since power-on or reset."),
    5602: ("Max Measured Value", "R", "S", "O", "Float", "", "", "Highest value since power-on or reset."),
    5603: ("Min Range Value", "R", "S", "O", "Float", "", "", "Lowest value the sensor can measure."),
    5604: ("Max Range Value", "R", "S", "O", "Float", "", "", "Highest value the sensor can measure."),
    5605: ("Reset Min and Max Measured Values", "E", "S", "O", "", "", "", "Resets the min and max measured values."),
    5700: ("Sensor Value", "R", "S", "M", "Float", "", "", "Last measured value."),
    5701: ("Sensor Units", "R", "S", "O", "String", "", "", "Units of the measured values."),
    5750: ("Application Type", "RW", "S", "O", "String", "", "", "What the sensor or actuator is used for."),
    5751: ("Sensor Type", "R", "S", "O", "String", "", "", "Kind of sensor."),
    5821: ("Current Calibration", "RW", "S", "O", "Float", "", "", "Calibration coefficient."),
    6042: ("Measurement Quality Indicator", "R", "S", "O", "Integer", "0..23", "", "Quality of the measurement."),
    6049: ("Measurement Quality Level", "R", "S", "O", "Integer", "0..100", "", "Confidence in the measurement, in percent."),
    6050: ("Fractional Timestamp", "R", "S", "O", "Float", "0..1", "s", "Fraction of a second to add to Timestamp."),
}
ACTUATOR = {
    5518: SENSOR[5518],
    5701: SENSOR[5701],
    5706: ("Colour", "RW", "S", "O", "String", "", "", "Colour as a string in some colour space."),
    5750: SENSOR[5750],
    5805: ("Cumulative active power", "R", "S", "O", "Float", "", "Wh", "Energy used since the last reset."),
    5820: ("Power factor", "R", "S", "O", "Float", "", "", "Power factor of the load."),
    5850: ("On/Off", "RW", "S", "M", "Boolean", "", "", "Whether the output is on."),
    5851: ("Dimmer", "RW", "S", "O", "Integer", "0..100", "/100", "Output level in percent."),
    5852: ("On time", "RW", "S", "O", "Integer", "", "s", "Seconds since switched on; writing 0 resets it."),
    6050: SENSOR[6050],
}
BASIC_SENSOR = [5518, 5601, 5602, 5603, 5604, 5605, 5700, 5701, 5750, 6042, 6049, 6050]


def rows(table, ids):
    return [(rid, *table[rid]) for rid in ids]


IPSO = [
    (3300, "Generic Sensor", "1.1", "A sensor of any kind, with its units given by Sensor Units.",
     rows(SENSOR, BASIC_SENSOR + [5751])),
    (3301, "Illuminance", "1.1", "An illuminance sensor (lux).", rows(SENSOR, BASIC_SENSOR)),
    (3303, "Temperature", "1.1", "A temperature sensor (for example in degrees Celsius).", rows(SENSOR, BASIC_SENSOR)),
    (3304, "Humidity", "1.1", "A relative humidity sensor (percent).", rows(SENSOR, BASIC_SENSOR)),
    (3311, "Light Control", "1.0", "A light source that can be switched, dimmed and coloured.",
     rows(ACTUATOR, [5850, 5851, 5852, 5805, 5820, 5706, 5701, 5750])),
    (3312, "Power Control", "1.1", "A power relay or other switched, optionally dimmable, load.",
     rows(ACTUATOR, [5850, 5851, 5852, 5805, 5820, 5750, 5518, 6050])),
    (3323, "Pressure", "1.1", "A pressure sensor (for example in pascals).",
     rows(SENSOR, BASIC_SENSOR + [5821])),
    (3336, "Location", "2.0", "A position given as numbers, with compass direction and velocity.", [
        (6051, "Numeric Latitude", "R", "S", "M", "Float", "", "lat", "Latitude in degrees (WGS 84)."),
        (6052, "Numeric Longitude", "R", "S", "M", "Float", "", "lon", "Longitude in degrees (WGS 84)."),
        (6053, "Numeric Uncertainty", "R", "S", "O", "Float", "", "m", "Accuracy of the position."),
        (5705, "Compass Direction", "R", "S", "O", "Float", "0..360", "deg", "Measured compass direction."),
        (5517, "Velocity", "R", "S", "O", "Opaque", "", "", "Velocity as 3GPP TS 23.032 encodes it."),
        (5518, "Timestamp", "R", "S", "O", "Time", "", "", "When the position was measured."),
        (5750, "Application Type", "RW", "S", "O", "String", "", "", "What the object is used for."),
        (6042, "Measurement Quality Indicator", "R", "S", "O", "Integer", "0..23", "", "Quality of the measurement."),
        (6049, "Measurement Quality Level", "R", "S", "O", "Integer", "0..100", "", "Confidence in the measurement, in percent."),
        (6050, "Fractional Timestamp", "R", "S", "O", "Float", "0..1", "s", "Fraction of a second to add to Timestamp."),
    ]),
]

HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Portico LwM2M object definition, written by lwm2m-xml/make-definitions.py from the object
     tables of the LwM2M specifications and the OMA LwM2M registry (facts only; the wording is
     Portico's). Apache-2.0, as the rest of Portico. -->
<LWM2M xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="http://openmobilealliance.org/tech/profiles/LWM2M.xsd">
"""


def element(indent, name, text):
    return f"{indent}<{name}>{escape(text)}</{name}>\n"


def write(oid, name, urn, lwm2m, version, instances, mandatory, description, resources):
    s = HEADER + '  <Object ObjectType="MODefinition">\n'
    i = "    "
    s += element(i, "Name", name)
    s += element(i, "Description1", description)
    s += element(i, "ObjectID", str(oid))
    s += element(i, "ObjectURN", urn)
    s += element(i, "LWM2MVersion", lwm2m)
    s += element(i, "ObjectVersion", version)
    s += element(i, "MultipleInstances", instances)
    s += element(i, "Mandatory", mandatory)
    s += i + "<Resources>\n"
    for rid, rname, ops, inst, mand, ty, rng, unit, desc in sorted(resources):
        j = i + "    "
        s += f'{i}  <Item ID="{rid}">\n'
        s += element(j, "Name", rname)
        s += element(j, "Operations", ops)
        s += element(j, "MultipleInstances", "Multiple" if inst == "M" else "Single")
        s += element(j, "Mandatory", "Mandatory" if mand == "M" else "Optional")
        s += element(j, "Type", ty)
        s += element(j, "RangeEnumeration", rng)
        s += element(j, "Units", unit)
        s += element(j, "Description", desc)
        s += f"{i}  </Item>\n"
    s += i + "</Resources>\n"
    s += element(i, "Description2", "")
    s += "  </Object>\n</LWM2M>\n"
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{oid}.xml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(s)


for obj in OBJECTS:
    write(*obj)
for oid, name, version, description, resources in IPSO:
    urn = f"urn:oma:lwm2m:ext:{oid}" + ("" if version == "1.0" else f":{version}")
    write(oid, name, urn, "1.0", version, "Multiple", "Optional", description, resources)
